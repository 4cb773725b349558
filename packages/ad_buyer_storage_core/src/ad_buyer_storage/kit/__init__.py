"""A small toolkit for backend authors: per-item batch outcomes, the expiry sweeper, URL and
secret handling. Our three backends use it; a fourth author copies one small package."""
