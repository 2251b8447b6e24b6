"""FER Studio: the Streamlit entry point. Run with ``streamlit run app.py``."""

import bootstrap  # first: the start-up steps (see its docstring), before anything heavy

import streamlit as st

st.set_page_config(page_title="FER Studio", page_icon="🙂", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/dataset.py", title="Dataset", icon="🗂️"),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/runs.py", title="Runs", icon="📈"),
    st.Page("pages/evaluate.py", title="Evaluate", icon="🎯"),
    st.Page("pages/explore.py", title="Explore", icon="🔬"),
    st.Page("pages/predict.py", title="Predict", icon="📷"),
    st.Page("pages/quiz.py", title="Quiz", icon="🧠"),
]

with bootstrap.starting():  # a notice while a fresh server loads the pages' libraries
    st.navigation(PAGES).run()
