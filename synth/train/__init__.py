"""Fine-tuning on a run's train split with MuonClip (``synth train``), and the tool chat template it trains."""
