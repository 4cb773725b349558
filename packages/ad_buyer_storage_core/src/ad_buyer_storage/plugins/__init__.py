"""Discovery and configuration: backend specs, the registry (entry points, pluggy), settings,
and the factories that build a storage from them."""
