"""What the database benchmark apps share (TechEmpower's shapes): where the data is, the pool size every framework
gets, the fortunes template, and the rule for the ``queries`` parameter. Plain Python and Jinja2 only, so every
framework's venv can import it."""

import os

import jinja2

DB_URL = os.environ.get("BENCH_DB_URL", "postgresql://postgres@127.0.0.1:5432/cello_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
CACHE_PREFIX = "cello-bench:"  # cached rows: cello-bench:world:<id> -> {"id": .., "randomNumber": ..} as JSON
POOL_SIZE = 32
WORLD_ROWS = 10_000
WORLD_QUERY = 'SELECT id, randomnumber AS "randomNumber" FROM world WHERE id = $1'
FORTUNES_QUERY = "SELECT id, message FROM fortune"
UPDATE_QUERY = "UPDATE world SET randomnumber = $2 WHERE id = $1"
EXTRA_FORTUNE = "Additional fortune added at request time."

FORTUNES = jinja2.Environment(autoescape=True).from_string(
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>"
    "{% for fortune in fortunes %}<tr><td>{{ fortune.id }}</td><td>{{ fortune.message }}</td></tr>{% endfor %}"
    "</table></body></html>"
)


def query_count(value):
    """TechEmpower's rule: an integer clamped to 1..500; anything else is 1."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        return 1
    return min(max(count, 1), 500)
