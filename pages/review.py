"""Review queue page (coming next): The active-learning queue: the cases the model is least sure about come first. Confirm, correct, skip or flag each label; every action is recorded with the reviewer's name."""
import streamlit as st

st.title("Review queue")
st.info("**Coming next.** The active-learning queue: the cases the model is least sure about come first. Confirm, correct, skip or flag each label; every action is recorded with the reviewer's name.", icon=":material/schedule:")
