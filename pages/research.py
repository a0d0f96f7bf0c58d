"""Research page (coming next): Reproductions of the papers NeuroGrade builds on: active-learning curves, transferability scores (LogME, LEEP, NCE, H-score) against fine-tuned accuracy, and ACGAN class balancing."""
import streamlit as st

st.title("Research")
st.info("**Coming next.** Reproductions of the papers NeuroGrade builds on: active-learning curves, transferability scores (LogME, LEEP, NCE, H-score) against fine-tuned accuracy, and ACGAN class balancing.", icon=":material/schedule:")
