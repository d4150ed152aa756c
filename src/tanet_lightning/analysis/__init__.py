"""Analysis helpers: the paper's reference numbers (report) live here."""
