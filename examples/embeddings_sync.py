"""Embed a few sentences in one batch and compare them.

An embeddings request is one user message; its vector comes back in `result.embedding`.
Runs against whatever OPENAI_BASE_URL / OPENAI_API_KEY point at (`batchling emulator` prints the
lines to export for the offline emulator, whose vectors are deterministic but carry no meaning).
"""

import math

from batchling import ExperimentManager, RawMessage, RawRequest

SENTENCES = ["A cat sat on the mat.", "A kitten rested on the rug.", "Stocks fell sharply today."]

em = ExperimentManager()
em.create_experiment(
    experiment_name="sentence-vectors",
    provider="openai",
    endpoint="/v1/embeddings",
    model="text-embedding-3-small",
    raw_requests=[RawRequest(messages=[RawMessage(role="user", content=s)]) for s in SENTENCES],
)
em.start_experiment(experiment_name="sentence-vectors")
experiment = em.wait(experiment_name="sentence-vectors", poll_interval=0.5)
print(f"{experiment.name}: {experiment.status}")

vectors = [result.embedding or [] for result in em.get_results("sentence-vectors")]
print(f"{len(vectors)} vectors of {len(vectors[0])} dimensions")
for i in range(len(vectors)):
    for j in range(i + 1, len(vectors)):
        # The vectors are unit length, so the dot product is the cosine similarity.
        cosine = math.fsum(a * b for a, b in zip(vectors[i], vectors[j], strict=True))
        print(f"{SENTENCES[i]!r} vs {SENTENCES[j]!r}: {cosine:.3f}")
