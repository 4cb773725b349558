from ad_buyer_storage.plugins import BackendSpec, hookimpl


@hookimpl
def ad_buyer_storage_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            "dictstore",
            "ad_buyer_storage_example.backend:DictStore.from_settings",
            description="example third-party backend (expiry, no atomics)",
            url_schemes=("dictstore",),
        )
    ]
