"""The compiled executor for documents that only select fields."""
