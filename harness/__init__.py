"""The harness: compare, bench, report, results files and the command line."""
