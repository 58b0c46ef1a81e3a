"""Parsers generated from ksy/ by ksy/build.js. Do not edit: run `make ksy`."""
