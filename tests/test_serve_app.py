"""The server's parts in process: the batcher's passes (budget, splitting, joining) and what an
unexpected error gives (a 500 naming the request id; the traceback in the log only)."""

import asyncio
import dataclasses
import logging

import numpy as np
import pytest
from conftest import read_sts_sentences
from starlette.testclient import TestClient

from flaubert_np.sentence import SentenceEncoder
from flaubert_np.serve import inputs
from flaubert_np.serve.app import Settings, create_app
from flaubert_np.serve.batching import Batcher
from flaubert_np.serve.metrics import Metrics

TOL = 1e-5
SENTENCES = list(dict.fromkeys(read_sts_sentences("dev")))[:40]  # no text twice


@pytest.fixture
def encoder():
    return SentenceEncoder.from_pretrained("demo")


def record_passes(encoder) -> list[list[tuple]]:
    """Wrap encoder.encode_tokenized: each pass's texts, as tuples of token ids."""
    passes: list[list[tuple]] = []
    forward = encoder.encode_tokenized

    def recorded(features, prompt_length=0):
        passes.append([tuple(f["input_ids"][0].tolist()) for f in features])
        return forward(features, prompt_length)

    encoder.encode_tokenized = recorded
    return passes


def test_batcher_budget_split_and_join(encoder):
    budget = 120
    passes = record_passes(encoder)
    metrics = Metrics()
    batcher = Batcher(encoder, budget, 0, metrics)
    requests = [SENTENCES[:25], SENTENCES[25:28], [SENTENCES[28]], SENTENCES[29:40]]

    async def main():
        tokenized = [inputs.tokenize(encoder, texts, "inputs", "", True) for texts in requests]
        waiting = [asyncio.ensure_future(batcher.embed(t.features)) for t in tokenized]
        await asyncio.sleep(0.01)  # all four queued before the model thread starts
        batcher.start()
        return await asyncio.gather(*waiting)

    results = asyncio.run(main())
    batcher.stop()
    for texts, got in zip(requests, results, strict=True):
        assert np.abs(got - encoder.encode(texts)).max() <= TOL
    ids = [[tuple(encoder.tokenize([t])["input_ids"][0].tolist()) for t in texts]
           for texts in requests]  # fmt: skip
    taken = [text for p in passes for text in p]
    assert sorted(taken) == sorted(t for texts in ids for t in texts)  # every text once
    for texts in ids:  # each request's texts in order
        assert [t for t in taken if t in texts] == texts
    tokens = [sum(map(len, p)) for p in passes]
    assert all(n <= budget for n in tokens)
    # every pass but the last is full: it ended because a text would not fit
    longest = max(len(t) for texts in ids for t in texts)
    assert all(n + longest > budget for n in tokens[:-1])
    assert len(passes) > 3  # the 25-sentence request was split
    # ... and the requests queued behind it were not held up until its end: all three are
    # done by the second pass (its rest went to the back of the queue)
    assert set(ids[1] + ids[2]) <= set(passes[0] + passes[1])
    assert 'flaubert_np_batch_requests_bucket{le="1"}' in metrics.render()
    joined = metrics.batch_requests.counts[()]
    assert sum(joined[1:]) >= 1  # some pass held texts of two requests or more
    assert metrics.inputs.values[()] == 40


def test_a_text_over_the_budget_goes_alone(encoder):
    passes = record_passes(encoder)
    batcher = Batcher(encoder, 4, 0, Metrics())
    batcher.start()
    features = inputs.tokenize(encoder, SENTENCES[:3], "inputs", "", True).features
    got = asyncio.run(batcher.embed(features))
    batcher.stop()
    assert np.abs(got - encoder.encode(SENTENCES[:3])).max() <= TOL
    assert [len(p) for p in passes] == [1, 1, 1]


def test_unexpected_errors_are_500_with_a_request_id(encoder, monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="flaubert_np.serve")
    app = create_app(encoder, Settings(served_model_name="demo"))
    with TestClient(app, raise_server_exceptions=False) as client:

        def boom(*args, **kwargs):
            raise RuntimeError("boom in the tokenizer")

        monkeypatch.setattr(inputs, "token_lists", boom)
        response = client.post("/tokenize", json={"inputs": "Le chat dort."})
        assert response.status_code == 500
        request_id = response.headers["x-request-id"]
        body = response.json()
        assert body == {"error": f"internal error (request id {request_id}; the server log has "
                                 "the details)", "error_type": "Backend"}  # fmt: skip
        assert "Traceback" in caplog.text and "boom in the tokenizer" in caplog.text
        assert request_id in caplog.text
        monkeypatch.undo()

        def broken_forward(*args, **kwargs):
            raise RuntimeError("boom in the model")

        encoder.encode_tokenized = broken_forward  # the model thread calls it
        response = client.post("/v1/embeddings", json={"input": "Le chat dort."})
        assert response.status_code == 500
        error = response.json()["error"]
        assert (
            error["type"] == "server_error" and response.headers["x-request-id"] in error["message"]
        )
        assert "boom" not in response.text and "boom in the model" in caplog.text

        del encoder.encode_tokenized  # the model thread carries on
        response = client.post("/v1/embeddings", json={"input": "Le chat dort."})
        assert response.status_code == 200
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("include_prompt", [True, False])
def test_the_default_prompt_is_applied_as_encode_does(encoder, include_prompt):
    encoder.prompts = {"query": "question : "}
    encoder.default_prompt_name = "query"
    encoder.pooling = dataclasses.replace(encoder.pooling, include_prompt=include_prompt)
    texts = SENTENCES[:4]
    with TestClient(create_app(encoder, Settings(served_model_name="demo"))) as client:
        response = client.post("/embed", json={"inputs": texts, "normalize": False})
        assert client.get("/info").json()["prompt"] == "question : "
    assert response.status_code == 200, response.text
    want = encoder.encode(texts)  # the default prompt prepended, left out of pooling or not
    assert np.abs(np.array(response.json()) - want).max() <= TOL
    assert np.abs(want - encoder.encode(texts, prompt="")).max() > 1e-3  # the prompt mattered


def test_a_body_without_length_is_cut_at_the_limit(encoder):
    def chunks():  # sent chunked: no Content-Length to refuse it by
        yield b'{"inputs": ["' + b"a" * 40
        yield b"b" * 40 + b'"]}'

    settings = Settings(served_model_name="demo", payload_limit=60)
    with TestClient(create_app(encoder, settings)) as client:
        response = client.post("/embed", content=chunks())
        assert response.status_code == 413, response.text
        assert response.json()["error"] == (
            "the body is over the limit of 60 bytes (--payload-limit)"
        )
        assert response.headers["connection"] == "close"
        assert client.post("/embed", json={"inputs": "court"}).status_code == 200
