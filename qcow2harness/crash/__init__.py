"""Crash consistency against real writers.

capture (QEMU through blklogwrites, or the reference writer's own log) ->
states (epochs between flushes, subsets of the in-flight epoch, torn writes) ->
oracle (checker, guest data read through QEMU, the zone persistence model) ->
campaign (one workload, or the QEMU option matrix) -> report.

    from qcow2harness.crash import CampaignSpec, run_campaign
    result = run_campaign(CampaignSpec("qemu", "allocation"))
    result.violations   # [] when every crash state is allowed

Nothing here prints or exits; `qcow2-harness crash` is the CLI.
"""

from .campaign import CampaignResult, CampaignSpec, Violation, rebuild_state, run_campaign

__all__ = ["CampaignResult", "CampaignSpec", "Violation", "rebuild_state", "run_campaign"]
