"""Audio input for speech models: WAV files, resampling, log-mel features (M3)."""
