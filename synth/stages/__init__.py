"""Pipeline stages: tools -> agents -> tasks -> rollouts -> judge -> dataset, each re-runnable and resumable."""
