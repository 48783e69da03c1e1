"""The blocking API, as in a notebook or a script.

Runs against whatever OPENAI_BASE_URL / OPENAI_API_KEY point at: the real service, or the emulator
(`batchling emulator` prints the lines to export).
"""

from batchling import ExperimentManager, RawMessage, RawRequest

em = ExperimentManager()

raw_requests = [
    RawRequest(
        system_prompt="You are a helpful geography assistant.",
        messages=[RawMessage(role="user", content=f"What is the capital of {country}?")],
        max_tokens=50,
    )
    for country in ["France", "Japan", "Kenya"]
]

experiment = em.create_experiment(
    experiment_name="capitals-sync",
    model="gpt-4o-mini",
    provider="openai",
    endpoint="/v1/chat/completions",
    title="Capitals",
    description="What is the capital of ...?",
    raw_requests=raw_requests,
)
em.start_experiment(experiment_name="capitals-sync")
experiment = em.wait(experiment_name="capitals-sync", poll_interval=0.5)
print(f"{experiment.name}: {experiment.status}")

for result in em.get_results(experiment_name="capitals-sync"):
    print(f"{result.custom_id}: {result.text if result.ok else result.error}")
