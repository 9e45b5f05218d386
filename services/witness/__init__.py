"""witness: co-signs the auditor's tree heads once it has checked them, with a key of its own."""
