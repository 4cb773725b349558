"""Operations across stores: migrate and verify, mirror repair, progress display."""
