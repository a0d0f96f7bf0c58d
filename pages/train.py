"""Train page (coming next): Retrain a model on the confirmed labels as a background job, with live loss and accuracy curves, a comparison against the active version on the locked test set, and promotion only when the new version is better."""
import streamlit as st

st.title("Train")
st.info("**Coming next.** Retrain a model on the confirmed labels as a background job, with live loss and accuracy curves, a comparison against the active version on the locked test set, and promotion only when the new version is better.", icon=":material/schedule:")
