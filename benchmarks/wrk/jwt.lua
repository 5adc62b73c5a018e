-- GET with an HS256 bearer token (sub "bench", role admin, expires in 2100), signed with cello_app.py's secret.
wrk.headers["Authorization"] = "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJiZW5jaCIsInJvbGVzIjpbImFkbWluIl0sImV4cCI6NDEwMjQ0NDgwMH0.KHI0Gd5_A8iAaSMZiRk2Av5bfbGDJhPZ59OELAOOoE8"
