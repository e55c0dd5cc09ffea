"""The dataset: accepted trajectories in OpenAI form, a TRL training view, a dataset card, publishing."""
