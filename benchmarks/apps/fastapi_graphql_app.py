"""FastAPI with Strawberry's own integration (strawberry.fastapi.GraphQLRouter) serving the benchmark schema."""

from contextlib import asynccontextmanager

from fastapi import FastAPI
from graphql_schema import close_pool, open_pool, schema
from strawberry.fastapi import GraphQLRouter


@asynccontextmanager
async def lifespan(app):
    await open_pool()
    yield
    await close_pool()


app = FastAPI(lifespan=lifespan)
app.include_router(GraphQLRouter(schema), prefix="/graphql")
