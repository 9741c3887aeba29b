"""The feature follower (`kfloop features follow`): keeps the online aggregates fresh from the event log."""
