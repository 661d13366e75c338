"""The background loop: retraining triggers, gates, promotion."""
