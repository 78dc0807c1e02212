"""The app database's connection, with its password kept as a secret."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class PostgresConnection(Block):
    """Connection to the application's PostgreSQL database.

    Example:
        ```python
        from blocks.database import PostgresConnection
        db = PostgresConnection.load("local-database")
        ```
    """

    _block_type_name = "Flowmasters Postgres Connection"
    _description = "Connection to the Flow Masters application database; the password is a secret."

    host: str = Field(default="127.0.0.1", description="Database host.")
    port: int = Field(default=5432, description="Database port.")
    database: str = Field(description="Database name.")
    username: str = Field(description="Role the application and the migrations log in as.")
    password: SecretStr = Field(description="Password of that role.")

    def libpq_env(self) -> dict[str, str]:
        """The PG* variables for psql, pg_dump and the app; the only place the secret is unwrapped."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.database,
            "PGUSER": self.username,
            "PGPASSWORD": self.password.get_secret_value(),
            "PGCONNECT_TIMEOUT": "5",
        }

    def describe(self) -> str:
        """Where the database is, without the secret (for messages and reports)."""
        return f"postgresql://{self.username}@{self.host}:{self.port}/{self.database}"
