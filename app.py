"""MedCore: `streamlit run app.py`. Routes to the pages; every page is a thin view over medcore."""

import streamlit as st

st.set_page_config(page_title="MedCore", page_icon="🫁", layout="wide")

navigation = st.navigation([
    st.Page("pages/xray.py", title="Chest X-ray", icon="🩻", default=True),
    st.Page("pages/notes.py", title="Case notes", icon="📝"),
])
st.sidebar.caption("MedCore · decision support, not a diagnosis")
navigation.run()
