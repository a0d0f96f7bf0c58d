"""What several pages share: the store connection and the reviewer's name (not a page itself:
app.py lists the pages explicitly)."""
from __future__ import annotations

import streamlit as st


@st.cache_resource(show_spinner=False)
def _repo_for(db_url: str):
    from core.store import Repository

    return Repository.open(db_url)


def get_repo():
    """The store of the current settings (one per database URL, shared by the sessions)."""
    from core.config import get_settings

    return _repo_for(str(get_settings().db_url))


def reviewer_name() -> str:
    """Who is working, from the sidebar field (every label and promotion records it)."""
    return str(st.session_state.get("reviewer_name", "") or "").strip()
