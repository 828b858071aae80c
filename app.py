"""MedCore: `streamlit run app.py`. Routes to the pages; every page is a thin view over medcore."""

import streamlit as st

st.set_page_config(page_title="MedCore", page_icon=":material/pulmonology:", layout="wide")

navigation = st.navigation([
    st.Page("views/xray.py", title="Chest X-ray", icon=":material/radiology:", default=True),
    st.Page("views/notes.py", title="Case notes", icon=":material/clinical_notes:"),
    st.Page("views/performance.py", title="Model performance", icon=":material/monitoring:"),
])
st.sidebar.caption("MedCore · decision support, not a diagnosis")
navigation.run()
