"""The job as it was before the performance work (commit c2899ff), kept verbatim as the reference implementation
for the fast-path equivalence tests. Not product code; do not optimise."""
