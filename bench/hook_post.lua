-- wrk script for bench/webhook_ingest.sh: POST one JSON body with a bearer
-- token. The body and token come from the environment so the same script
-- serves every source format.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("QW_BENCH_TOKEN") or "bench-bearer-token")
wrk.body = os.getenv("QW_BENCH_BODY") or '{"account":"shop","reason":"45009","count":1}'
