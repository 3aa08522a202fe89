"""What ``/metrics`` shows for one process: its stages' counters and the store's gauges."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from services import reports
from services.runtime.metrics import StageMetrics
from services.runtime.store import Store
from services.runtime.store_gauges import StoreFigures, StoreGauges


@dataclass(frozen=True)
class Monitoring:
    """One registry per process; ``metrics`` goes to the stages it builds."""

    registry: CollectorRegistry
    metrics: StageMetrics
    gauges: StoreGauges

    @classmethod
    def of(cls, stages: Iterable[str]) -> Monitoring:
        registry = CollectorRegistry()
        gauges = StoreGauges()
        registry.register(gauges)
        return cls(registry, StageMetrics(registry, stages), gauges)

    def watch(self, store: Store) -> None:
        """Read the store's gauges from ``store`` at every scrape from now on."""

        def read() -> StoreFigures:
            with store.transaction() as conn:
                return reports.monitoring_figures(conn)

        self.gauges.watch(read)
