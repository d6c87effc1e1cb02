"""Networks: fingerprint estimation (FEN), parsing network, heads, baselines."""
