"""The SDK's tests/test_audit_sink.py, its recording sink (the module's ``_RecordingSink``, where
the middleware tests read back what was recorded) replaced by StorageAuditSink: each recorded
event is appended to the log on our store, and ``calls`` is the log as read back from it."""

from __future__ import annotations

from typing import Any

import pytest
import test_audit_sink as sdk
from adcp.audit_sink import AuditEvent
from test_audit_sink import *  # noqa: F403 - the SDK's tests, collected here

from ad_buyer_storage_adcp import StorageAuditSink
from conftest import cannot_apply

_NOT_A_STORE = "tests the SDK's event model or its logging/Slack reference sinks, not a store"
cannot_apply(
    "test_sdk_audit_sink",
    {
        name: _NOT_A_STORE
        for name in (
            "test_audit_event_is_frozen_with_field_defaults",
            "test_audit_event_rejects_unknown_fields",
            "test_audit_event_serializes_to_json_natively",
            "test_logging_audit_sink_emits_structured_json",
            "test_logging_audit_sink_records_failure_fields",
            "test_logging_audit_sink_uses_custom_logger_and_level",
            "test_slack_alert_sink_rejects_non_https",
            "test_slack_alert_sink_repr_redacts_webhook_url",
            "test_slack_alert_sink_repr_with_no_filter",
            "test_slack_alert_sink_skips_non_sensitive_operations",
            "test_slack_alert_sink_posts_to_webhook_with_pinned_transport",
            "test_slack_alert_sink_default_allowlist_drops_all_details",
            "test_slack_alert_sink_omits_exception_message_by_default",
            "test_slack_alert_sink_emits_only_allowlisted_details",
            "test_slack_alert_sink_raises_on_non_2xx",
            "test_middleware_isolates_sink_timeout",
            "test_middleware_isolates_sink_raise",
            "test_middleware_with_empty_sinks_is_noop_passthrough",
        )
    },
)


@pytest.fixture(autouse=True)
def _our_recording_sink(adapter, monkeypatch: pytest.MonkeyPatch) -> None:
    class RecordingOnOurStore:
        def __init__(self) -> None:
            self.sink: Any = adapter(StorageAuditSink)
            self.calls: list[AuditEvent] = []

        async def record(self, event: AuditEvent) -> None:
            await self.sink.record(event)
            self.calls = [e async for _, e in self.sink.events()]

    monkeypatch.setattr(sdk, "_RecordingSink", RecordingOnOurStore)
