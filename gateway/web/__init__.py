"""The HTTP surface: the views only; each blueprint calls guards and services."""
