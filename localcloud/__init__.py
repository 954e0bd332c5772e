"""Local cloud: moto server + emulation layer, local job executor, alarm evaluator, demo (never imported by product
code)."""
