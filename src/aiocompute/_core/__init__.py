"""Shared, API-agnostic machinery. Knows no API's names; never imports an API package."""
