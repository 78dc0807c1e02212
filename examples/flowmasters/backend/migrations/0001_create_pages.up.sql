-- Pages shown by the frontend. No BEGIN/COMMIT here: migrate.py wraps each file in a transaction.
CREATE TABLE pages (
    id serial PRIMARY KEY,
    title text NOT NULL,
    body text NOT NULL
);

INSERT INTO pages (title, body) VALUES
    ('Welcome to Flow Masters', 'Release automation you can watch: build, migrate, ship, roll back.'),
    ('Getting started', 'Edit the pages table or add a migration to change this content.');
