"""Provider adapters. The core reaches them only through `batchling.providers.registry`."""
