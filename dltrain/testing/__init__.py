"""Test aids that ship with dltrain: the DLTRAIN_FAULT hook, inert unless set (light zone)."""
