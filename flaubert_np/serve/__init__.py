"""`flaubert-np serve`: an embedding server with OpenAI's and TEI's routes (docs/serving.md).

    schemas.py   what the routes accept and answer, and the two error shapes
    inputs.py    texts -> tokenized model inputs, with the request-size bounds
    batching.py  the model worker: queued requests joined into forward passes
    metrics.py   counters and histograms in Prometheus' text format
    app.py       the Starlette app: routes, limits, API key, access log
    server.py    uvicorn: timeouts for slow clients, signals, logging

It needs the `serve` extra (uvicorn, starlette); nothing here is imported by `import flaubert_np`.
"""
