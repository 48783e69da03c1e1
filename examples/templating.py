"""Templating: one request per row, from template messages with {placeholders} and a table of rows.

The template is examples/capitals_template.json and the rows examples/countries.csv (its `population`
column is not used by the template, which is allowed). The same experiment from the command line:

    batchling create --name capitals-templated --model gpt-4o-mini \\
        --template-file examples/capitals_template.json --rows-file examples/countries.csv \\
        --id-field id

Runs against whatever OPENAI_BASE_URL / OPENAI_API_KEY point at: the real service, or the emulator
(`batchling emulator` prints the lines to export).
"""

from pathlib import Path

from batchling import ExperimentManager

HERE = Path(__file__).parent

em = ExperimentManager()
experiment = em.create_experiment(
    experiment_name="capitals-templated",
    model="gpt-4o-mini",
    provider="openai",
    template=HERE / "capitals_template.json",
    rows=HERE / "countries.csv",
    id_field="id",
)
print(f"{experiment.name}: {experiment.request_counts.total} requests")

# The rows may also be a list of dicts, and the template a list of messages:
in_memory = em.create_experiment(
    experiment_name="capitals-templated-inline",
    model="gpt-4o-mini",
    provider="openai",
    template=[{"role": "user", "content": "What is the capital of {country}?"}],
    rows=[{"country": "Egypt"}, {"country": "Italy"}],
)
print(f"{in_memory.name}: {in_memory.request_counts.total} requests")

for name in (experiment.name, in_memory.name):
    em.start_experiment(experiment_name=name)
    finished = em.wait(experiment_name=name, poll_interval=0.5)
    print(f"{finished.name}: {finished.status}")
    for result in em.get_results(experiment_name=name):
        print(f"{result.custom_id}: {result.text if result.ok else result.error}")
