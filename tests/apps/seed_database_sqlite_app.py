# The seed's "Database & Redis" snippet on the embedded SQLite, with no server at all: the same handler, the
# cache left out (Redis is a server). tests/test_seed_database.py creates the users table.
# fmt: off
from cello import App
from cello.enterprise import Database

app = App()
db = Database("sqlite:///:memory:", pool_size=20)

@app.get("/users/{id}")
async def get_user(request):
    user_id = request.params["id"]
    user = await db.fetch_one("SELECT * FROM users WHERE id = $1", user_id)
    return user
