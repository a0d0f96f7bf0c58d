"""NeuroGrade core: loading, preprocessing, models, inference, explanations, storage.

Never imports streamlit: everything here works from a notebook or `python -m core`.
"""
