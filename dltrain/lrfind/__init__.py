"""The learning-rate range test's maths and results (light zone); the sweep itself runs in dltrain.train.lr_sweep."""
