"""digits-app: a Flower App that trains offline on scikit-learn's digits data."""
