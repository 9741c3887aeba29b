"""The explainer: Alibi 0.9.4 IntegratedGradients and AnchorTabular explanations of ranking decisions."""
