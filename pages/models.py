"""Models page (coming next): The model zoo: each task's versions with their model cards (training data, recipe, cross-validated and test metrics, intended use, limitations), and promote / roll back."""
import streamlit as st

st.title("Models")
st.info("**Coming next.** The model zoo: each task's versions with their model cards (training data, recipe, cross-validated and test metrics, intended use, limitations), and promote / roll back.", icon=":material/schedule:")
