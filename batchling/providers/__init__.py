"""Provider folders. The core reaches them only through `batchling.providers.registry`.

`PROVIDERS` is the one list of them, in the order they are shown: the registry, the emulator,
the demo, the price table and the tests all read it. A new provider is a folder
`batchling/providers/<name>/` and one line here (see the README's "Adding a provider").
"""

PROVIDERS: tuple[str, ...] = (
    "openai",
    "anthropic",
    "gemini",
    "groq",
    "mistral",
    "together",
    "azure",
    "compatible",
)
