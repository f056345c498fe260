"""The agents: InfraBot, ArgoCD and CleanupAgent as Celery tasks, and the one hop they share."""

from agents._hop import HopOutcome, perform_hop
from agents._runtime import AgentRuntime

__all__ = ["AgentRuntime", "HopOutcome", "perform_hop"]
