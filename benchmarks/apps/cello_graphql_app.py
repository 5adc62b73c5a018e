"""Cello serving the benchmark schema (graphql_schema.py) with app.graphql and its defaults (limits, masking)."""

from graphql_schema import close_pool, open_pool, schema

from cello import App

app = App()
app.on_startup(open_pool)
app.on_shutdown(close_pool)
app.graphql("/graphql", schema)
