"""The online engine: executes a plan per request against the online store, with now = request time."""
