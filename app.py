"""FER Studio: the Streamlit entry point. Run with ``streamlit run app.py``."""

import streamlit as st

st.set_page_config(page_title="FER Studio", page_icon="🙂", layout="wide")

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("app_pages/dataset.py", title="Dataset", icon="🗂️"),
    st.Page("app_pages/train.py", title="Train", icon="🏋️"),
    st.Page("app_pages/runs.py", title="Runs", icon="📈"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon="🎯"),
    st.Page("app_pages/predict.py", title="Predict", icon="📷"),
]

st.navigation(PAGES).run()
