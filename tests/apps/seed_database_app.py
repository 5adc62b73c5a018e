# The seed's "Database & Redis" snippet, as written. The tests run it against services of their own (the seed_snippet
# fixture in tests/conftest.py puts a throwaway database and a redis-server of the test's in its two addresses).
# fmt: off
from cello import App
from cello.enterprise import Database, Redis

app = App()
db = Database("postgresql://localhost/mydb", pool_size=20)
cache = Redis("redis://localhost:6379")

@app.get("/users/{id}")
async def get_user(request):
    user_id = request.params["id"]
    cached = await cache.get(f"user:{user_id}")
    if cached:
        return cached
    user = await db.fetch_one("SELECT * FROM users WHERE id = $1", user_id)
    await cache.set(f"user:{user_id}", user, ttl=300)
    return user
