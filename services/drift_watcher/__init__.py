"""drift-watcher: production monitoring on faust-streaming — drift per feature and of the predictions,
online performance from outcomes, alerts, and retraining when the champion's drift is sustained."""
